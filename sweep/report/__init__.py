"""The comparison of finished runs, in pipeline order (sweep/collect.py is its command):

    gather.py    find run dirs and sweep dirs, read each run dir (sweep/rundir.py), name the jobs a sweep
                 asked for that never started
    configs.py   a run's config as it ran: flattened, interpolations and `auto` resolved
    cells.py     the keys that define a cell, each run's cell, one run per (cell, seed)
    tables.py    comparison.csv, summary.csv, significance.csv (sweep/report/stats.py), the tuned view, sorting
    markdown.py  comparison.md: the cell table as shown, its notes, the significance section
    plots.py     each task's curves and headline chart, and plots.json's record of them
    cost.py      each cell's cost against its quality, the Pareto front marked
    importance.py  a tuned sweep's knobs by fANOVA importance, its trials in parallel coordinates
    page.py      report.html: all of it on one self-contained page
    cli.py       the command line: options, the files written, stdout, the one-line errors

record.py holds RunRecord, what every stage passes along; errors.py the error the command line turns
into one line. Nothing here imports torch, transformers or the train app: collecting stays fast.
"""
