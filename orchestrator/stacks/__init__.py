"""Server-side stacks and their releases (issue 20).

- core.py: pure functions: what changes between two releases, and the leader's decision about a
  rolling release (deployed, wait, failed, roll back), over plain data with an injected `now`.
- store.py: the database side: apply a stack in one transaction, roll back, point the services
  at a release, and the views the API answers.
- monitor.py: the leader's watch over rolling releases, one step of each reconcile pass.
- template.py, package.py: packages (a folder or .tar.gz with stack.yaml) and values, rendered
  by Jinja2's sandbox; used by the CLI (rendering happens client-side, as in Helm 3).
"""
