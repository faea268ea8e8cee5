"""Run-directory I/O, reports and plots."""
