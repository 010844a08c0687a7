"""Template filters for money: exact plain decimals, signed and coloured gains/losses."""

from django import template

from ordermanager.core.admin_tools import signed_money
from ordermanager.core.formatting import money_text, number_text

register = template.Library()


@register.filter
def plain(value):
    """A quantity or price: plain, exact, never exponent notation (``.normalize`` gives ``2E+2``)."""
    return number_text(value)


@register.filter
def money(value):
    """An amount of money: 2 to 8 places."""
    return money_text(value)


@register.filter
def signed(value):
    return signed_money(value)
