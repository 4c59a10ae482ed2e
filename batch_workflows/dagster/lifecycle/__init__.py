"""The lifecycle in Dagster: a factory of requests → batch → results assets, sensor and checks.

``batch_lifecycle(name, partitions_def, endpoint, build_requests)`` defines them for a flow
(``factory``); downstream assets depend on its results asset (``deps=[lifecycle.results]``),
read its rows with ``load_results`` / ``fetch_results`` (``results``) and merge a range run's
per-partition metadata with ``combined_metadata``. The lifecycle itself
is ``batch_workflows.lifecycle``: this package only wires it into assets (``steps``), a
tracking sensor (``sensor``), checks (``checks``) and metadata (``metadata``). Its public names
are ``batch_workflows.dagster``'s.
"""
