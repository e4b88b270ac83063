"""The `mediqa` exit codes (README "Exit codes"), in one place for the CLI and the runner.

Kept free of heavy imports so `mediqa --help` stays fast.
"""

EXIT_OK = 0
EXIT_SCAN_FAILED = 1  # at least one scan has status=error (takes precedence over 3)
EXIT_USAGE = 2
EXIT_UNDER = 3  # at least one score under --fail-under
EXIT_INPUT = 4  # an input path is missing or unreadable
EXIT_OUTPUT = 5  # the report cannot be written
EXIT_WEIGHTS = 6  # invalid weights, or the model cannot run on the device/backend
EXIT_TREND_ALERT = 7  # `mediqa trends`: a scanner x protocol is out of control on its latest night
EXIT_INTERRUPTED = 130
