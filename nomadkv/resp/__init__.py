"""Sans-IO RESP codec: requests in (``request``), replies out (``reply``)."""
