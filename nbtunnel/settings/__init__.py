"""Settings: what one connection will do, decided before any socket opens.

The command line (from the grammar) wins over ``ssh_config`` (``Host`` and
``Match`` sections, ``Include``), which wins over ssh's defaults;
``resolve`` folds them into one :class:`ConnectSettings` that crosses to the
engine as plain data.  ``known_hosts`` reads and records host keys as
OpenSSH does (hashed names, markers); ``certificates`` parses OpenSSH
certificates, and ``wire`` the SSH encoding both read.  Files are read
here; nothing connects.
"""
