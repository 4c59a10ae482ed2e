"""The three shipped flows as components: each a thin layer over `batch_workflows.flows.<flow>`
and the lifecycle factory, its settings as YAML attributes."""
