"""The flow: composes the pure decisions and the shells. ``runtime`` builds what a renewal needs, ``renew`` runs
one renewal's state machine, ``sweep`` is the timer's safety net, ``deliveries`` the outbox, ``report`` the status,
and ``entry`` the functions ``function_app.py`` wires to triggers."""
