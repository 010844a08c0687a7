"""Template filters for money: exact plain decimals, signed and coloured gains/losses."""

from django import template

from ordermanager.core.admin_tools import signed_money
from ordermanager.core.decimals import plain_decimal

register = template.Library()


@register.filter
def plain(value):
    return "—" if value is None else plain_decimal(value)


@register.filter
def signed(value):
    return signed_money(value)
