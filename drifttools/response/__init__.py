"""Responding to a drifted container, from the host: plan, then preserve → isolate → freeze →
terminate → fix at the source (the driver is :mod:`drifttools.respond`).

:mod:`.action` is the contract and the ordered registry of the actions that change a
container (:mod:`.actions`: one module each); :mod:`.netns` holds nftables in a container's
network namespace; :mod:`.fixes` turns a report into what stops the drift from recurring;
:mod:`.falco` and :mod:`.webhook` trigger responses from Falco's alerts.
"""
