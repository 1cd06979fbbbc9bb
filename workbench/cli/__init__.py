"""The ``workbench`` command line: one module per command group, thin over the core.

:mod:`.main` builds the parser and dispatches; :mod:`.common` holds what every group shares
(config files, validation messages, Ctrl-C handling, stack files, the workspace option).
"""
