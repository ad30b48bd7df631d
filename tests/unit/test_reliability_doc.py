from tests.chaos import report


def test_the_results_table_in_docs_is_what_the_suite_recorded():
    assert report.section(report.DOC.read_text()) == report.render(report.load()), (
        "docs/reliability.md's results table differs from tests/chaos/results.json: "
        "run `python -m tests.chaos.report` (the chaos suite does it after each run)")
