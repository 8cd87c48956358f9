"""python -m litforge.summary outputs/multiruns/<sweep>: write a sweep's summary.csv, summary.md
and plots (run/summary.py), as a sweep does when it ends."""

from litforge.run.summary import main

if __name__ == "__main__":
    main()
