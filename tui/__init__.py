"""The on-call dashboard (Textual): `kidp-ops tui`, and `kidp-ops dev`'s live view.

It imports `kidp_ops`, never the reverse: `kidp-ops` finds it by the entry point
`kidp_ops.frontends: tui` (pyproject.toml). The layout follows the screen:

- `header/`: the header bar (target, read-only, counts, clock) and the connection banner;
- `body/`: the resource table (Line API), the log pane;
- `footer/`: the command bar (`:` commands and `/` filters);
- `screens/`: the main screen and the pushed ones (describe, YAML, simulator, confirm, help);
- `views/`: what each table shows (brokers, databases, events): columns, sorts, faults;
- pure helpers: `cells` (load bars, sparklines, ages), `filtering`, `commands`, `criteria`,
  `describing`, `probes` (the per-broker probe memory);
- `feed.py`: where the data comes from (informers, the registry, the history reader);
- `app.py`: the App and `create_app`, the factory tests and the launchers use;
- `launch.py`: the entry points (`main` for `kidp-ops tui`, `run_in_dev` for dev).
"""
