"""Analysis and report: tables, plots, HTML, advice."""
