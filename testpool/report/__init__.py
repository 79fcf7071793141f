"""Reporting: pure rendering (``render``), report files (``files``), console reporters (``console``)."""
