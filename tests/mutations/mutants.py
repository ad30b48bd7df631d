"""The mutants: deliberate breakages, each with the tests that must fail while it is in place.

A mutant is a list of exact text replacements (each `old` must occur once in its file) or a folder put on
PYTHONPATH (a sitecustomize.py that patches a library). `stage` is the stack its tests need: unit (none),
integration (the native stack), chaos (the native stack, whose services the tests stop and kill), cluster (the
3-broker stack), docker (an engine and the image), compose (docker compose up on the engine), secure (the
secured native stack: SASL_SSL, ACLs, https). The fault tests' mutants either break the code the fault is meant to catch or move the fault
to an idle moment; either way the test must fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutant:
    name: str
    why: str
    tests: list[str]
    stage: str
    edits: list[tuple[str, str, str]] = field(default_factory=list)  # (path, old text, new text)
    pythonpath: str | None = None  # a folder of the checkout put on PYTHONPATH


SERVICE = "healthpipe/consumer/service.py"

MUTANTS = [
    Mutant("commit_before_write", "every Consumer commits what poll()/consume() returned at once (at-most-once)",
           ["tests/integration/test_consumer.py::test_kill_9_mid_batch_then_restart_loses_nothing"], "integration",
           pythonpath="tests/mutations/commit_before_write"),
    Mutant("archive_stop_leaves_open_ranges",
           "shutdown and revoke flush only an open or in-flight batch, not the sink's open files (the archive bug)",
           ["tests/integration/test_archive.py::test_sigterm_seals_and_commits_the_open_ranges"], "integration",
           [(SERVICE, "            if self._fatal is None:\n                # always,",
             "            if (self.batch or self.checkpoint) and self._fatal is None:\n                # always,"),
            (SERVICE, "        # Flushed even when no batch is open or in flight",
             "        if not self.batch and not self.checkpoint:\n            return\n"
             "        # Flushed even when no batch is open or in flight")]),
    Mutant("iceberg_resumes_from_the_group",
           "the Iceberg archiver trusts the group's committed offsets, not the table's (a crash between snapshot "
           "and offset commit writes every row again)",
           ["tests/integration/test_archive_iceberg.py::"
            "test_an_archiver_whose_offsets_were_not_committed_resumes_from_the_table"], "integration",
           [("healthpipe/sinks/archive/iceberg_sink.py", "        if p.source.offset < self._skip_below.get(key, -1):",
             "        if False:"),
            # and the commit's own check (a range the table already holds is left out), the second defence
            ("healthpipe/sinks/archive/iceberg.py", "                if held.get(r.key, -1) > r.first:",
             "                if False:")]),
    Mutant("compaction_keeps_duplicates", "archive compact sorts a day but keeps every repeated (series, ts) row",
           ["tests/integration/test_archive_iceberg.py::"
            "test_compaction_removes_duplicates_in_one_snapshot_while_the_archiver_writes"], "integration",
           [("healthpipe/sinks/archive/compact.py", "    return table.filter(pc.fill_null(keep, True))",
             "    return table")]),
    Mutant("compaction_commits_in_two_snapshots",
           "archive compact deletes a day's old files in one commit and adds the new ones in another (readers see "
           "the day empty in between)",
           ["tests/integration/test_archive_iceberg.py::"
            "test_a_reader_during_compaction_sees_a_whole_snapshot_every_time"], "integration",
           [("healthpipe/sinks/archive/iceberg.py", """                    for f in old:
                        ow.delete_data_file(current[f.file_path])
                    for f in added:
                        ow.append_data_file(f)""", """                    for f in old:
                        ow.delete_data_file(current[f.file_path])
                with table.transaction() as tx, \\
                        tx.update_snapshot(snapshot_properties=self._carried(table) | properties).fast_append() as ow:
                    for f in added:
                        ow.append_data_file(f)""")]),
    Mutant("schema_drops_the_instance_tag", "the stored schema leaves out the `instance` tag",
           ["tests/unit/test_transformer.py"], "unit",
           [("healthpipe/schema/__init__.py", '''    if labels.get("instance"):
        tags["instance"] = labels["instance"]
''', "")]),
    Mutant("caches_grow_without_bound", "a bounded cache never pushes an entry out",
           ["tests/unit/test_bounded_caches.py"], "unit",
           [("healthpipe/common/bounded.py", "        while len(self._entries) > self.limit:",
             "        while False:")]),
    Mutant("caches_push_out_the_first_in", "a bounded cache pushes out the oldest insert, not the least recently used",
           ["tests/unit/test_bounded_caches.py"], "unit",
           [("healthpipe/common/bounded.py", """        if value is not None:
            self._entries.move_to_end(key)
        return value""", "        return value")]),
    Mutant("split_skips_the_second_half", "a window split in time publishes its first half only",
           ["tests/unit/test_producer_split.py"], "unit",
           [("healthpipe/producer/service.py", "        return total + self.publish_splitting(q, halves[1])",
             "        return total")]),
    Mutant("consumer_imports_a_sink", "the generic loop imports the InfluxDB sink (an import contract broken)",
           ["tests/unit/test_layering.py::test_the_import_contracts_hold"], "unit",
           [(SERVICE, "from healthpipe.sinks.base import Sink\n",
             "from healthpipe.sinks.base import Sink\nfrom healthpipe.sinks.influx.sink import InfluxSink  # noqa: F401\n")]),
    Mutant("old_dead_letter_header_unread", "the status header is read only under its new name",
           ["tests/unit/test_dead_letters.py"], "unit",
           [("healthpipe/common/dead_letters.py", "status = h.get(STATUS, h.get(OLD_STATUS))", "status = h.get(STATUS)")]),
    Mutant("skips_pass_under_ci", "a skipped test passes as green under CI=true",
           ["tests/unit/test_ci_skips.py"], "unit",
           [("tests/support/ci_skips.py", 'if os.environ.get("CI") == "true" and report.skipped',
             'if False and report.skipped')]),
    Mutant("completeness_picture_colours_reversed", "the completeness heatmap draws missing green, present red",
           ["tests/unit/test_completeness_picture.py"], "unit",
           [("healthpipe/ml/export.py", 'cmap="RdYlGn"', 'cmap="RdYlGn_r"')]),
    Mutant("completeness_gap_restarts_each_chunk", "a series' longest gap forgets where the chunk before left it",
           ["tests/unit/test_completeness_picture.py"], "unit",
           [("healthpipe/ml/export.py", "np.where(first_of_series, self.last_seen[r],", "np.where(first_of_series, t,")]),
    Mutant("completeness_picture_draws_the_first_series", "past PICTURE_ROWS series the picture draws the first ones "
           "by id, not the least complete", ["tests/unit/test_completeness_picture.py"], "unit",
           [("healthpipe/ml/export.py", "rows[np.lexsort((np.arange(len(rows)), share[rows]))[:PICTURE_ROWS]]",
             "rows[:PICTURE_ROWS]")]),
    Mutant("completeness_picture_reads_one_block", "the picture reads back only the first block of its spilled "
           "per-bin counts", ["tests/unit/test_completeness_picture.py"], "unit",
           [("healthpipe/ml/export.py", "while block := self._bins_file.read(", "if block := self._bins_file.read(")]),
    Mutant("completeness_bins_not_spilled", "a chunk's per-bin counts are never written for the picture",
           ["tests/unit/test_completeness_picture.py"], "unit",
           [("healthpipe/ml/export.py", "self._bins_file.write(records.tobytes())", "records.tobytes()")]),
    Mutant("read_series_misses_a_new_header", "the pandas-free Flux reader takes the header of a later block of "
           "tables (other tag keys) for a row", ["tests/integration/test_flux_readers.py"], "integration",
           [("healthpipe/common/flux.py", "            header_next = True\n            continue", "            continue")]),
    Mutant("serve_imports_pandas_at_start", "the feature server loads pandas (and pyarrow) before any request needs "
           "them", ["tests/unit/test_serve_imports.py"], "unit",
           [("healthpipe/ml/serve.py", "from healthpipe.ml.stream_feed import StreamFeed\n",
             "from healthpipe.ml.data import latest_features  # noqa: F401\nfrom healthpipe.ml.stream_feed import StreamFeed\n")]),
    Mutant("split_label_values_unescaped", "the series split puts label values into the regex unescaped",
           ["tests/integration/test_producer.py::test_a_window_too_large_for_prometheus_is_split_and_published_whole"],
           "integration",
           [("healthpipe/common/promql.py", "alternatives = [regex_literal(v) for v in values]",
             "alternatives = list(values)")]),
    Mutant("producer_resumes_from_an_uncommitted_watermark", "the producer loads its watermarks read_uncommitted: "
           "a watermark of a transaction a kill left open counts, its window is never published",
           ["tests/integration/test_producer.py::test_kill_9_mid_transaction_then_restart_leaves_no_gap_and_no_duplicate"],
           "integration",
           [("healthpipe/producer/watermarks.py", "    consumer = reader(cfg)\n",
             "    consumer = reader(cfg, committed_only=False)\n")]),
    Mutant("fault_kill9_producer_between_transactions", "the frozen producer is killed only when Kafka shows "
           "none of its transactions holding records (the fault at an idle moment)",
           ["tests/integration/test_producer.py::test_kill_9_mid_transaction_then_restart_leaves_no_gap_and_no_duplicate"],
           "integration",
           [("tests/integration/test_producer.py", "                if open_transactions(cfg, topics):",
             "                if not open_transactions(cfg, topics):")]),
    Mutant("orphans_forget_old_metadata_files", "remove-orphans counts only the current metadata file as reached, "
           "not the older ones the table still lists",
           ["tests/unit/test_iceberg_orphans.py::test_only_unreached_files_old_enough_go_and_every_snapshot_still_reads"],
           "unit",
           [("healthpipe/sinks/archive/orphans.py",
             "    reached.update(entry.metadata_file for entry in metadata.metadata_log)\n", "")]),
    Mutant("iceberg_open_creates_first", "opening the table creates it and loads it only when the catalog refuses "
           "(pyiceberg's create_table_if_not_exists): each open leaves an unreached metadata file",
           ["tests/unit/test_iceberg_orphans.py::test_opening_the_table_again_writes_nothing"], "unit",
           [("healthpipe/sinks/archive/iceberg.py", "                return catalog.load_table(self.settings.iceberg.table)\n"
             "            except NoSuchTableError:\n                pass\n",
             "                raise NoSuchTableError\n            except NoSuchTableError:\n                pass\n")]),
    Mutant("orphans_ignore_age", "remove-orphans deletes an unreached file however new (one about to be committed)",
           ["tests/unit/test_iceberg_orphans.py::test_only_unreached_files_old_enough_go_and_every_snapshot_still_reads"],
           "unit",
           [("healthpipe/sinks/archive/orphans.py", "if rel not in reached_rel and modified < cutoff:",
             "if rel not in reached_rel:")]),
    Mutant("as_of_reads_past_the_cut", "an export as of T reads samples newer than T",
           ["tests/integration/test_ml.py::test_as_of_never_lets_a_later_sample_in"], "integration",
           [("healthpipe/ml/data.py", "    cut_ms = min(end_ms, as_of_ms) if as_of_ms is not None else end_ms",
             "    cut_ms = end_ms")]),
    Mutant("producer_read_failure_leaves_the_transaction_open", "the publisher aborts its transaction on Kafka "
           "errors only: a window read in groups whose Prometheus read fails mid-way leaves it open",
           ["tests/unit/test_producer_split.py::test_a_read_failing_inside_the_transaction_aborts_it"], "unit",
           [("healthpipe/producer/publisher.py", "        except BaseException:\n", "        except PublishError:\n")]),
    Mutant("producer_reads_every_group_first", "the producer reads all groups of series of a window before "
           "publishing any: memory holds the whole window again",
           ["tests/unit/test_producer_split.py::"
            "test_a_window_of_more_series_than_max_series_per_read_is_read_group_by_group_into_one_transaction"],
           "unit",
           [("healthpipe/producer/service.py",
             "            reads = self.extractor.read_window_in_groups(q, window, self.cfg.extract.split_label, "
             "max(2, groups))",
             "            reads = iter(list(self.extractor.read_window_in_groups(q, window, "
             "self.cfg.extract.split_label, max(2, groups))))")]),
    Mutant("producer_keeps_the_last_group", "the producer's group of series stays referenced while the next group "
           "is read: two groups in memory, not one",
           ["tests/unit/test_producer_split.py::"
            "test_a_window_of_more_series_than_max_series_per_read_is_read_group_by_group_into_one_transaction"],
           "unit",
           [("healthpipe/producer/service.py", "                del series  # or this group",
             "                pass  # or this group")]),
    Mutant("expiry_counts_deleted_entries", "snapshot expiry counts a manifest's deleted entries as read: the files "
           "compaction replaced are never deleted",
           ["tests/unit/test_iceberg_expire.py::"
            "test_expiry_after_compaction_deletes_the_replaced_files_and_keeps_rows_and_offsets"], "unit",
           [("healthpipe/sinks/archive/expire.py", "discard_deleted=True", "discard_deleted=False")]),
    Mutant("expiry_drops_the_newest", "snapshot expiry keeps the oldest snapshots instead of the newest",
           ["tests/unit/test_iceberg_expire.py::test_expiry_keeps_the_newest_and_does_nothing_when_within_the_bound"],
           "unit",
           [("healthpipe/sinks/archive/expire.py", "snapshots[-keep:]", "snapshots[:keep]")]),
    Mutant("features_stddev_of_a_sample", "the feature function's stddev divides by n - 1, not n",
           ["tests/unit/test_features_fn.py::test_the_features_are_what_their_definitions_say"],
           "unit",
           [("healthpipe/ml/features.py", "np.add.reduceat(deviation * deviation, starts) / nf)",
             "np.add.reduceat(deviation * deviation, starts) / (nf - 1))")]),
    Mutant("rates_per_millisecond", "--rate-counters divides by milliseconds, not seconds",
           ["tests/integration/test_ml.py::test_rate_counters_equal_an_independent_computation_from_prometheus"],
           "integration",
           [("healthpipe/ml/shape.py", 'rate = delta / ((frame["ts"] - prev_t) / 1000.0)',
             'rate = delta / (frame["ts"] - prev_t)')]),
    Mutant("warm_observed_at_window_start", "the warm tier's `last` is placed at its window's start, not its end",
           ["tests/integration/test_tiers.py::test_an_export_older_than_hot_reads_the_warm_tier_and_agrees_with_hot"],
           "integration",
           [("healthpipe/ml/tiers_read.py", '        frame["ts"] = frame["ts"] + warm.every.ms', "")]),
    Mutant("tag_values_read_as_numbers", "the InfluxDB reader lets pyarrow infer tag types (status=\"200\" → 200)",
           ["tests/integration/test_ml.py::test_the_features_equal_an_independent_computation_from_prometheus"],
           "integration",
           [("healthpipe/common/flux.py", "    types = {c: tag for c in keep} | {", "    types = {")]),
    Mutant("verify_counts_dead_letters_as_missing", "verify does not move dead-lettered points out of `missing`",
           ["tests/integration/test_verify.py::test_points_influxdb_refused_are_dead_lettered_not_missing"],
           "integration",
           [("healthpipe/verify/dead_lettered.py", "                if diff and any(",
             "                if False and diff and any(")]),
    Mutant("verify_groups_leave_influxdb_whole",
           "a group of series is narrowed on Prometheus' side only: InfluxDB's figures hold every series of the window",
           ["tests/integration/test_verify.py::test_a_window_of_more_series_than_max_series_per_read_is_verified_in_groups"],
           "integration",
           [("healthpipe/verify/stored.py", "        if group is not None:  # a regex",
             "        if False and group is not None:  # a regex")]),
    Mutant("verify_groups_forget_the_series_without_the_label",
           "the groups are the label's values only: series without the split label are verified by no group",
           ["tests/integration/test_verify.py::test_a_window_of_more_series_than_max_series_per_read_is_verified_in_groups"],
           "integration",
           [("healthpipe/verify/expected.py", 'values = ["", *self.extractor.label_values(',
             'values = [*self.extractor.label_values(')]),
    Mutant("verify_groups_ignore_influxdb_only_values",
           "groups come from Prometheus' label values alone: a series InfluxDB has under another value is never seen",
           ["tests/integration/test_verify.py::test_a_window_of_more_series_than_max_series_per_read_is_verified_in_groups"],
           "integration",
           [("healthpipe/verify/expected.py", "only_stored = sorted(v for v in stored_values if v not in exact and not v.startswith(prefixes))",
             "only_stored: list[str] = []")]),
    Mutant("verify_counts_the_series_without_the_tag_as_a_value",
           "the values InfluxDB's side of the groups met include \"\" (no tag): a value only InfluxDB has is not listed",
           ["tests/integration/test_verify.py::test_a_window_of_more_series_than_max_series_per_read_is_verified_in_groups"],
           "integration",
           [("healthpipe/verify/stored.py", "and values_seen is not None and tags.get(group.tag):",
             "and values_seen is not None:"),
            ("healthpipe/verify/stored.py", "                values_seen.add(tags[group.tag])",
             "                values_seen.add(tags.get(group.tag, \"\"))")]),
    Mutant("verify_prefix_ignores_the_stored_form",
           "any branch of label values may become a prefix, also one InfluxDB stores in another form (a backslash "
           "before `,= ` or at the end, a line break): the two sides of a group select different series",
           ["tests/unit/test_verify_units.py::test_pattern_groups_put_every_value_in_one_group_on_both_sides"], "unit",
           [("healthpipe/verify/expected.py",
             "return bool(prefix) and representable(prefix) == prefix and not any(c in prefix for c in _REPLACEMENTS)",
             "return bool(prefix)")]),
    Mutant("flux_regex_leaves_the_slash_unescaped", "a `/` in a tag value ends the Flux regex literal early",
           ["tests/integration/test_flux_quoting.py::test_every_tag_value_is_matched_by_its_regex_and_by_no_other"],
           "integration",
           [("healthpipe/common/flux.py", r'_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~/])")',
             r'_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~])")')]),
    Mutant("verify_skips_a_range_ending_at_the_oldest_sample",
           "a range whose end is Prometheus' oldest sample is taken as older than it: nothing verified, exit 0",
           ["tests/integration/test_verify.py::test_a_window_too_large_for_prometheus_is_verified_in_pieces"],
           "integration",
           [("healthpipe/verify/verification.py", "        if lowest > end_ms:", "        if lowest >= end_ms:")]),
    Mutant("revoke_leaves_open_ranges", "a revoke with no batch open leaves the archive's open files behind",
           ["tests/integration/test_archive.py::test_two_replicas_and_a_rebalance_in_the_middle_archive_every_row_once"],
           "integration",
           [(SERVICE, "        # Flushed even when no batch is open or in flight",
             "        if not self.batch and not self.checkpoint:\n            return\n"
             "        # Flushed even when no batch is open or in flight")]),
    # --- one for each fault test whose proof of work in flight was added (issue 24) ---------------------------
    Mutant("fault11_commit_failure_crashes_the_consumer",
           "a commit Kafka refuses (the broker is down) kills the consumer instead of being owed",
           ["tests/chaos/test_scenarios.py::test_11_kafka_broker_down_mid_stream[kill_9]"], "chaos",
           [("healthpipe/consumer/checkpoint.py", "        except KafkaException as exc:\n            # The data",
             "        except KafkaException as exc:\n            raise RuntimeError(exc) from None\n            # The data")]),
    Mutant("fault15_a_broken_write_is_not_retried", "a write that fails (InfluxDB killed under it) is skipped",
           ["tests/chaos/test_hard_faults.py::test_15_influxdb_killed_9_with_a_write_outstanding"], "chaos",
           [("healthpipe/sinks/influx/sink.py",
             "            result = self.loader.write_body(request.body, request.lines)  # Retryable / Fatal: retried whole",
             "            try:\n                result = self.loader.write_body(request.body, request.lines)\n"
             "            except Exception:\n                prepared.written_upto += 1\n                continue")]),
    # (a restart that skips recovery survives 22: its ranges are cut by rows from the committed offset, so the
    # re-read writes the same file names; 25 is the test that catches that one)
    Mutant("fault22_kills_at_random_moments_only", "no kill waits for an upload: the faults may hit no upload",
           ["tests/chaos/test_archive_faults.py::test_22_archiver_killed_9_at_10_moments_mid_range_and_mid_upload"],
           "chaos",
           [("tests/chaos/test_archive_faults.py", "            if kill % 2:  # every other kill waits for an upload",
             "            if False:  # every other kill waits for an upload")]),
    Mutant("fault25_leftover_intents_ignored", "a restart ignores the intents a kill left (no re-cut)",
           ["tests/chaos/test_archive_faults.py::test_25_an_intent_left_by_a_kill_is_cut_again_committed_and_removed"],
           "chaos",
           [("healthpipe/sinks/archive/sink.py", "        if key in self._unrecovered:",
             "        if False and key in self._unrecovered:")]),
    Mutant("fault24_kill_between_transactions", "the broker is killed when no transaction is open",
           ["tests/chaos/test_producer_kafka_down.py"], "chaos",
           [("tests/chaos/test_producer_kafka_down.py",
             'wait_until(lambda: sample("healthpipe_producer_transaction_open") == 1',
             'wait_until(lambda: sample("healthpipe_producer_transaction_open") == 0')]),
    Mutant("faultc2_kill_between_transactions", "the coordinator is killed when no transaction is open",
           ["tests/cluster/test_cluster_faults.py::test_c2_kill_9_the_transaction_coordinator_during_a_commit"],
           "cluster",
           [("tests/cluster/test_cluster_faults.py",
             'return at_open.get("healthpipe_producer_transaction_open") == 1',
             'return at_open.get("healthpipe_producer_transaction_open") == 0')]),
    Mutant("down_decides_by_the_machine", "`down` looks for a Docker engine instead of reading what `up` recorded",
           ["tests/docker/test_up_down.py"], "docker",
           [("healthpipe/cli.py", 'if what is not None and what.mode == "compose":',
             "if stack.docker_engine_runs():")]),
    Mutant("compose_kafka_logs_outside_the_volume",
           "docker-compose's Kafka writes its log outside the named volume (apache/kafka's /tmp default: the bug "
           "that lost Kafka's data on every recreate)",
           ["tests/compose/test_compose_up.py::test_down_and_up_keeps_every_acknowledged_sample"], "compose",
           [("config/kafka/server.properties", "log.dirs=/var/lib/kafka/data", "log.dirs=/tmp/kraft-combined-logs")]),
    Mutant("compose_consumer_is_a_super_user",
           "the secure profile's brokers make the consumer's principal a super user (every ACL bypassed)",
           ["tests/compose/test_compose_secure.py::test_each_container_holds_exactly_its_roles_rights"], "compose",
           [("config/kafka/start.sh", "super.users=User:hp-admin\n", "super.users=User:hp-admin;User:hp-consumer\n")]),
    Mutant("receive_answers_before_kafka_acks", "the receiver answers a remote write without waiting for Kafka to "
           "acknowledge its records (prometheus-kafka-adapter's bug: its users lost data)",
           ["tests/chaos/test_receive_kafka_down.py"], "chaos",
           [("healthpipe/receive/service.py", "        if not acks.done.wait(max(0.0, deadline - time.monotonic())):\n",
             "        if False:\n")]),
    Mutant("receive_drops_a_label", "the receiver drops the `instance` label of each series",
           ["tests/integration/test_receive.py::test_both_versions_land_as_the_producers_messages"], "integration",
           [("healthpipe/receive/decode.py", "        if value:  # an empty value", "        if value and name != 'instance':  # an empty value")]),
    Mutant("receive_drops_the_last_series", "the 2.0 decoder skips the last series of every request",
           ["tests/integration/test_receive_prometheus3.py::test_prometheus3_pushes_and_influxdb_equals_its_query_api"
            "[remote-write-2.0]"], "integration",  # the 2.0 case only: the 1.0 one cannot meet this decoder
           [("healthpipe/receive/decode.py", "    for ts in request.timeseries:\n        refs = list(ts.labels_refs)\n",
             "    for ts in request.timeseries[:-1]:\n        refs = list(ts.labels_refs)\n")]),
    Mutant("receive_compiled_loop_forgets_staleness_markers",
           "the compiled samples loop's staleness markers are not counted (the 2.0 answer's Samples-Written short)",
           ["tests/unit/test_receive_samples.py"], "unit",
           [("healthpipe/receive/decode.py", "        decoded.stale_markers += stale\n", "")]),
    Mutant("receive_compiled_series_span_one_sample_late",
           "a compiled series' window starts at its first sample, not just before it (the first sample outside)",
           ["tests/unit/test_receive_samples.py"], "unit",
           [("healthpipe/receive/decode.py", "RawSamples(text, count), first, last)",
             "RawSamples(text, count), first + 1, last)")]),
    Mutant("alert_names_a_metric_nobody_exports", "an alert rule's PromQL names a metric the code does not export",
           ["tests/unit/test_dashboards.py"], "unit",
           [("config/prometheus/alerts.yml", "expr: healthpipe_verify_missing_samples > 0",
             "expr: healthpipe_verify_missing > 0")]),
    Mutant("flux_string_escapes_only_dollar_brace",
           "Flux quoting escapes `${` but not a `$` before an escape (the old rule)",
           ["tests/integration/test_flux_quoting.py"], "integration",
           [("healthpipe/common/flux.py", r'''.replace("$", "\\x24")''', r'''.replace("${", "\\${")''')]),
    Mutant("once_waits_forever", "`producer --once` retries an unreachable Prometheus without end",
           ["tests/integration/test_producer.py::test_once_exits_3_within_extract_timeout_when_prometheus_is_unreachable"],
           "integration",
           [("healthpipe/producer/service.py", "        service.give_up_after = cfg.extract.timeout.seconds\n",
             "        pass\n")]),
    Mutant("dead_letter_refusal_crashes", "a dead letter librdkafka refuses up front (no WRITE on the DLQ) is "
           "raised instead of held like a failed delivery",
           # the unit test pins it; the secure one meets it only when librdkafka's metadata says so before a retry
           ["tests/unit/test_dead_letters.py::test_a_dead_letter_refused_before_it_leaves_is_a_failed_delivery_not_a_crash"],
           "unit",
           [("healthpipe/common/dead_letters.py", "            except KafkaException as exc:\n",
             "            except ZeroDivisionError as exc:\n")]),
    Mutant("refused_login_reconnects_forever", "a refused SASL login is only logged (librdkafka's default)",
           ["tests/secure/test_secured_pipeline.py::test_a_wrong_password_stops_the_process_naming_principal_and_listener"],
           "secure",
           [("healthpipe/common/kafka.py", "    if err.code() == KafkaError._AUTHENTICATION:\n",
             "    if err.code() == 'never':\n")]),
    Mutant("kafka_password_logged", "the librdkafka settings are logged at DEBUG and the Kafka password is not on "
           "the scrub list",
           ["tests/secure/test_secured_pipeline.py::test_no_secret_reaches_a_log_line_argv_or_metrics_in_a_secured_run"],
           "secure",
           [("healthpipe/common/kafka.py",
             '    return {**k.as_librdkafka_dict(), "error_cb": _refused(k), "logger": _LIBRDKAFKA_LOG}',
             '    log.debug("kafka_client_config %s", k.as_librdkafka_dict())\n'
             '    return {**k.as_librdkafka_dict(), "error_cb": _refused(k), "logger": _LIBRDKAFKA_LOG}'),
            ("healthpipe/common/config.py", "[token, *self.kafka.security.secrets(), *extra, *s3, features]",
             "[token, *extra, *s3, features]")]),
    Mutant("features_without_its_token", "/features answers without checking the bearer token",
           ["tests/unit/test_hostile_input.py::test_with_a_token_features_and_metrics_need_it_and_probes_do_not"],
           "unit",
           [("healthpipe/ml/serve.py", "        if not token:\n            return True\n",
             "        return True\n")]),
    Mutant("features_influx_read_on_the_loop", "the feature server reads InfluxDB on its event loop (every other "
           "request waits behind the read)",
           ["tests/unit/test_feature_server_http.py::test_a_request_waiting_on_influxdb_does_not_hold_up_the_others"],
           "unit",
           [("healthpipe/ml/serve.py", """                answers = await asyncio.get_running_loop().run_in_executor(
                    self.pool, answer_many, self.cfg, requests, self.cache, self.feed)""",
             """                answers = answer_many(self.cfg, requests, self.cache, self.feed)""")]),
    Mutant("features_bulk_on_the_loop", "the feature server computes a whole-query (bulk) answer on its event loop "
           "(one-series requests wait behind it)",
           ["tests/unit/test_feature_server_http.py::test_a_bulk_request_does_not_hold_up_one_series_requests"],
           "unit",
           [("healthpipe/ml/serve.py", "            bulk = len(requests) > 1 or not requests[0].labels\n",
             "            bulk = False\n")]),
    Mutant("http_head_without_a_deadline", "a connection's request head has no deadline (uvicorn's own timer is "
           "for idle kept-alive connections only)",
           ["tests/unit/test_feature_server_http.py::test_a_client_trickling_its_request_head_is_cut_off"], "unit",
           [("healthpipe/common/http_server.py", """        super().connection_made(transport)
        self._arm()""", """        super().connection_made(transport)""")]),
    Mutant("http_nagle_on", "the HTTP server's socket made by socket.create_server (proto 0: asyncio leaves Nagle on)",
           ["tests/unit/test_feature_server_http.py::test_answers_go_out_without_nagle"], "unit",
           [("healthpipe/common/http_server.py", "        self.socket = _listen(host, port)\n",
             "        self.socket = socket.create_server((host, port), backlog=BACKLOG)\n")]),
    Mutant("producer_trusts_its_watermark_after_an_unknown_commit", "after a commit that timed out (it may still "
           "complete), the producer publishes from its own watermark instead of the watermark topic's",
           ["tests/unit/test_producer_unknown_commit.py"], "unit",
           [("healthpipe/producer/service.py",
             "        if self.publisher.outcome_unknown and not self._reload_watermarks():",
             "        if False:")]),
    Mutant("publisher_forgets_an_unknown_commit", "a commit that timed out is not marked as of unknown outcome",
           ["tests/unit/test_producer_unknown_commit.py::test_a_commit_that_times_out_leaves_the_outcome_unknown"],
           "unit",
           [("healthpipe/producer/publisher.py", "                self.outcome_unknown = True\n", "")]),
    Mutant("features_stream_starts_at_the_end", "the feature server's stream starts at the topic's end instead of "
           "the consumer group's committed offsets (what InfluxDB does not have yet is never read)",
           ["tests/integration/test_features_stream.py::"
            "test_after_a_kill_9_the_server_refills_from_influxdb_and_the_topic_and_answers_the_same"], "integration",
           [("healthpipe/ml/stream_feed.py", "            start = self._committed(partitions)\n",
             "            start = kafka.end_offsets(consumer, topic, partitions)\n")]),
    Mutant("features_stream_keeps_a_repeat", "the stream store inserts a sample again at a timestamp it holds "
           "(InfluxDB overwrites it)",
           ["tests/unit/test_stream_store.py::test_samples_are_appended_in_order_and_a_repeated_timestamp_overwrites"],
           "unit",
           [("healthpipe/ml/stream_store.py", "            if i < len(self.ts) and self.ts[i] == t:",
             "            if False:")]),
    Mutant("features_stream_skips_the_transform", "the feature server's stream stores the messages' samples as they "
           "are, not what the consumer's transform keeps (NaN, unparsable, disallowed metrics)",
           ["tests/unit/test_stream_store.py::test_the_feed_keeps_exactly_what_the_consumers_transform_writes"],
           "unit",
           [("healthpipe/ml/stream_feed.py", "        for i, ts, values in self.transformer.points(windows):",
             "        for i, ts, values in [(i, [t for t, _ in w.samples], [float(v) if v.strip() else 0.0 for _, v in "
             "w.samples]) for i, w in enumerate(windows) if all(v.strip().lstrip('+-').replace('.', '').isdigit() "
             "or v in ('NaN', '+Inf') for _, v in w.samples)]:")]),
    Mutant("features_memo_ignores_changes", "the stream store's memo of a window's features is keyed without the "
           "series' version: an overwrite or a late sample inside the window is answered from the old features",
           ["tests/unit/test_stream_store.py::"
            "test_a_window_seen_before_takes_its_features_from_the_memo_and_any_change_inside_it_recomputes"],
           "unit",
           [("healthpipe/ml/stream_store.py", "key = (self.ts[lo], self.ts[hi - 1], hi - lo, self.version)",
             "key = (self.ts[lo], self.ts[hi - 1], hi - lo, 0)")]),
    Mutant("features_fresh_without_kafka", "the feature server counts a freshness check Kafka did not answer as "
           "caught up: staleness_s stays small and /readyz 200 while Kafka is down",
           ["tests/chaos/test_features_kafka_down.py"], "chaos",
           [("healthpipe/ml/stream_feed.py",
             "            return  # the broker did not answer: not known to be caught up, staleness grows",
             "            self.caught_up_at = asked_at\n            return")]),
    Mutant("features_any_label_name", "/features passes any label name to Flux (quoted, but not refused)",
           ["tests/secure/test_hostile_queries.py"], "secure",
           [("healthpipe/ml/serve.py", 'if not LABEL_NAME.fullmatch(name) or name == "query"]',
             'if name == "query"]')]),
    Mutant("export_frames_split_a_series", "the export's streaming reader cuts a frame one row early: the last row "
           "of a series goes into the next frame with the series after it",
           ["tests/integration/test_flux_readers.py::test_read_frames_streams_the_answer_in_frames_of_whole_series",
            "tests/integration/test_ml.py::test_the_grid_takes_the_last_observation_within_the_lookback"],
           "integration",
           [("healthpipe/common/flux.py", "cut = int(differs[-1]) + 1", "cut = int(differs[-1])")]),
]
