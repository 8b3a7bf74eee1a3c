"""Generated package (bubu._gen). Do not edit."""
