"""Cursor pagination for the big, growing collections.

Ordering by the primary key (descending: newest first) keeps every page one
index range scan and stable while rows are inserted; OFFSET pages would both
slow down and shift as orders and fills arrive.
"""

from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500
