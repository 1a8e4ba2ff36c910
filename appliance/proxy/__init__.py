"""The HTTPS/HTTP side of the data path: mitmproxy addon, ClientHello reader, block page, PAC."""
