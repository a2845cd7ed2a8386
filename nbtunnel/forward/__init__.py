"""The forwards: listeners here, channels there, and the bytes between them.

``local`` (``-L``) and ``dynamic`` (``-D``, a SOCKS server from ``socks``)
accept on a ``listener`` of this machine (its thread in ``accept``, which
serves on through any shortage of descriptors or threads) and open a
channel of the connection for each client, admitted by ``admission``
(no thread of its own until its channel is open, a bounded number of
opens in flight, clients that already gave up dropped; each an
``arrival`` meanwhile); ``remote`` (``-R``) asks the server to listen and
connects each channel it sends back.  ``relay`` moves the bytes of one
client and one channel both ways, counting them.  Forwards know a
connection only as something that opens channels: no paramiko here.
Each is a ``base.RunningForward`` in the engine, not the caller's
``Forward`` handle.
"""
