"""What a run leaves behind: `record` writes metrics.json and the TensorBoard HParams entry,
`history` keeps the per-epoch metrics (in checkpoints too), `resume` continues a stopped run in
its own folder, `figures` draws the test split into TensorBoard, `summary` turns a sweep's job
folders into summary.csv, summary.md and plots. Nothing here is imported before a run's config
is checked (no torch at import), and nothing here imports your models or data."""
