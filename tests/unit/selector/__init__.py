"""Tests of the Calico selector language (egressgw.selector)."""
