"""Log lines: logfmt whose values survive spaces and quotes, JSON with `log.format: json`, secrets scrubbed."""

import json
import logging
import shlex

import pytest

from healthpipe.common import logs
from healthpipe.common.config import load_config

SECRET = "tok-3x4mpl3-s3cret"


def _lines(capsys, fmt: str, emit) -> list[str]:
    logs.configure("INFO", [SECRET], fmt)
    emit(logging.getLogger("healthpipe.test"))
    return capsys.readouterr().err.splitlines()


def _logfmt(line: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(line))


def _emit(log: logging.Logger) -> None:
    log.warning("flush_failed attempt=%d retry_in=%.1fs error=%s", 2, 1.5, f'HTTP 503: "busy" token {SECRET}')
    log.error("flush_abandoned samples=%d (not committed: will be re-delivered)", 3)
    log.info("another library said %s, %d times", "so", 4)
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("crashed where=%s", "here")


def test_logfmt_quotes_values_so_each_field_parses_back(capsys):
    first, second, third, fourth = _lines(capsys, "logfmt", _emit)
    fields = _logfmt(first)
    assert fields["level"] == "WARNING" and fields["logger"] == "healthpipe.test"
    assert (fields["msg"], fields["attempt"], fields["retry_in"]) == ("flush_failed", "2", "1.5s")
    assert fields["error"] == 'HTTP 503: "busy" token ***'
    assert _logfmt(second)["detail"] == "(not committed: will be re-delivered)"
    assert _logfmt(third)["msg"] == "another library said so, 4 times"  # not in the event shape: one msg
    assert _logfmt(fourth)["where"] == "here" and "RuntimeError" in fourth


def test_json_has_typed_fields_one_object_per_line(capsys):
    docs = [json.loads(line) for line in _lines(capsys, "json", _emit)]
    assert docs[0]["msg"] == "flush_failed" and docs[0]["attempt"] == 2 and docs[0]["retry_in"] == "1.5s"
    assert docs[1]["samples"] == 3
    assert "RuntimeError" in docs[3]["exception"]


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_no_secret_reaches_a_line_in_either_format(capsys, fmt):
    text = "\n".join(_lines(capsys, fmt, _emit))
    assert SECRET not in text and "***" in text


def test_log_format_is_a_config_key():
    assert load_config(path="/dev/null", environment=False).log.format == "logfmt"
    assert load_config(path="/dev/null", environment=False, log={"format": "json"}).log.format == "json"
    with pytest.raises(Exception, match="format"):
        load_config(path="/dev/null", environment=False, log={"format": "xml"})


def test_a_value_built_of_several_arguments_is_one_field(capsys):
    def emit(log):
        log.info("commit_failed partition=%s/%d error=%s", "health-metrics", 3, "broker down")
        log.info("resume offset=%d: then %d more", 5, 6)  # a conversion outside key=: one msg, still one line

    first, second = _lines(capsys, "logfmt", emit)
    assert _logfmt(first)["partition"] == "health-metrics/3" and _logfmt(first)["error"] == "broker down"
    assert _logfmt(second)["msg"] == "resume offset=5: then 6 more"


def test_a_field_never_overwrites_the_lines_own_keys(capsys):
    def emit(log):
        log.info("odd level=%s", "DEBUG")
        log.info("odd detail=%s and some prose", "x")

    first, second = _lines(capsys, "logfmt", emit)
    assert _logfmt(first)["level"] == "INFO" and _logfmt(first)["msg"] == "odd level=DEBUG"
    assert _logfmt(second)["msg"] == "odd detail=x and some prose"
