"""``spendwh run`` progress lines: one readable line per event on the console."""

from dagster_project.commands.run import CONSOLE_LINE_LIMIT, shorten


def test_long_lines_are_cut_for_the_console_only():
    assert shorten(None) is None
    assert shorten("ok    raw/spend_logs rows_read=3") == "ok    raw/spend_logs rows_read=3"
    wall = "  spend_warehouse_dbt: op did not yield outputs {" + "'x', " * 400 + "}"
    cut = shorten(wall)
    assert len(cut) <= CONSOLE_LINE_LIMIT
    assert cut.startswith("  spend_warehouse_dbt: op did not yield outputs {")
    assert cut.endswith("(whole line in the run log)")
