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
# `mediqa trends`: a chart of a scanner x protocol is past its limit on its latest two nights
EXIT_TREND_ALERT = 7
EXIT_INTERRUPTED = 130
