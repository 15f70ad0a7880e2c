"""Fix at the source: from a report's drift, what stops it from recurring.

:mod:`.suggest` judges the drift (pure: a report and an image config in, suggestions out,
each naming the changes that motivated it); :mod:`.dockerfile`, :mod:`.kubernetes`,
:mod:`.allowlist` and :mod:`.summary` each write one file from the suggestions.
"""
