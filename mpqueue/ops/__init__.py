"""The operator's tools: `mpqueue` (run, check, reload a service) and `mpqctl`
(inspect and administer queues). The top of the import graph: nothing else
imports ops."""
