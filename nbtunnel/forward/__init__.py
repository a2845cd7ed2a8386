"""The forwards: listeners here, channels there, and the bytes between them.

``local`` (``-L``) and ``dynamic`` (``-D``, a SOCKS server from ``socks``)
accept on a ``listener`` of this machine and open a channel of the
connection for each client; ``remote`` (``-R``) asks the server to listen
and connects each channel it sends back.  ``relay`` moves the bytes of one
client and one channel both ways, counting them.  Forwards know a
connection only as something that opens channels: no paramiko here.
Each is a ``base.RunningForward`` in the engine, not the caller's
``Forward`` handle.
"""
