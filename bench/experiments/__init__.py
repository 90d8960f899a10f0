"""Proposed product changes, applied from the outside so they can be measured first.

    EXP_URLS=plain .venv/bin/python bench/run.py --settings bench.experiments.settings \\
        --only get_ceiling get_ours post_ours post_bare

Nothing here is product code: each toggle (an environment variable read by
`bench.experiments.settings`) reproduces one recommendation of docs/PERFORMANCE_TUNING.md.
"""
