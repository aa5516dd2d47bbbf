"""Integer bounds for what the API accepts: every integer a request carries fits the column it is
stored in or compared with.

Integer columns are 32-bit on PostgreSQL (out of range there: DataError) and SQLite refuses a
Python int past 64 bits (OverflowError); a number that fits neither can name no row. Bounding
each parameter at the edge turns such input into a 422 naming the field; errors.py maps what
slips through (OverflowError, DataError) to a 422 as well, never a 500.
"""
from __future__ import annotations

INT32_MAX = 2**31 - 1  # Integer columns: revision numbers, versions, event ids, counts
INT64_MAX = 2**63 - 1  # BigInteger columns (node memory) and byte counts
