"""Peer engines for ``bench/bench_peers.py``: the same policies written for pycasbin and zen-engine.

``tiering``: the shipped tiering policy as a zen-engine decision graph (``tiering.jdm.json``,
written by hand), the Charter program it is compared with, and the agreement check.
``access``: the unconditional rules of the shipped access policy, turned into a Charter
policy directory, a pycasbin policy (model: ``access.model.conf``) and a zen-engine
decision table; the requests and the agreement check.

Nothing here times anything: the benchmark does, and the tests run the agreement checks.
"""
