"""xDS: type URLs, the ACK/NACK rule, the resource cache, generators, the ADS server."""
