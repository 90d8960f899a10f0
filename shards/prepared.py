"""Querysets compiled to SQL once and run with new values: the ORM's statements at the cost of
hand-written ones.

Django compiles a QuerySet to SQL every time one is evaluated. For the hottest statements of
the service (a user by id, a page of the list) that costs more CPU than the rest of the
database work of the request: ~250 µs for a lookup by primary key against ~120 µs for running
it (`docs/PERFORMANCE_TUNING.md`). The SQL of one queryset shape never changes, so a
`PreparedQuery` builds the queryset once with stand-in values, lets Django compile it, and then
runs that SQL with the caller's values on the alias the router picks. Rows come back as model
instances (`Model.from_db`, what QuerySet iteration does) or, for a `values_list` queryset, as
tuples. Only plain querysets qualify: no related selects, no annotations that need converters
(checked when compiled).
"""

from collections import namedtuple
from collections.abc import Callable
from typing import Any

from django.db import connections, models, router
from django.db.models.query import ModelIterable, NamedValuesListIterable, ValuesListIterable
from django.db.models.sql import InsertQuery
from psycopg.types.datetime import TimestamptzLoader


class _Slot:
    """A parameter of the compiled SQL: a caller's value by name, or a constant."""

    __slots__ = ("name", "constant")

    def __init__(self, name: str | None, constant: Any = None) -> None:
        self.name = name
        self.constant = constant


class PreparedQuery:
    """`build(**values)` returns the queryset. `stand_ins` are values of the right types,
    each distinct from the others and from the queryset's constants, so that every parameter
    of the compiled SQL can be traced back to its name. Values Django writes into the SQL
    itself (a slice's LIMIT) are `inlined`: one compiled statement per value met."""

    def __init__(
        self,
        build: Callable[..., models.QuerySet],
        *,
        inlined: tuple[str, ...] = (),
        **stand_ins: Any,
    ) -> None:
        self._build = build
        self._inlined = inlined
        self._stand_ins = stand_ins
        self.model = build(**stand_ins).model
        self._compiled: dict[tuple, tuple[str, list[_Slot], list[str] | None]] = {}

    def _compile(self, alias: str, shape: dict[str, Any]) -> tuple:
        queryset = self._build(**{**self._stand_ins, **shape})
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        slots = []
        for param in params:
            names = [name for name, value in self._stand_ins.items() if value == param]
            if len(names) > 1:
                raise ValueError(f"stand-ins {names} are equal: give each a distinct value")
            slots.append(_Slot(names[0]) if names else _Slot(None, param))
        if any(compiler.get_converters([column for column, _, _ in compiler.select])):
            raise ValueError("a prepared query cannot apply Django's converters")
        iterable = queryset._iterable_class
        if iterable is ModelIterable:
            fields = [field.attname for field in self.model._meta.concrete_fields]
            if compiler.klass_info is None or len(compiler.select) != len(fields):
                raise ValueError("only querysets of one model's own columns can be prepared")
            make_row = None
        elif iterable is ValuesListIterable:
            fields, make_row = None, None
        elif iterable is NamedValuesListIterable:
            fields = None
            make_row = namedtuple("Row", queryset.query.values_select)._make
        else:
            raise ValueError("prepare a queryset of model instances or a values_list")
        return sql, slots, fields, make_row

    def fetch(self, hints: dict[str, Any], **values: Any) -> list:
        """The rows, read where the router sends a read with these `hints`: model instances,
        or tuples for a values_list."""
        alias = router.db_for_read(self.model, **hints)
        key = tuple(values[name] for name in self._inlined)
        compiled = self._compiled.get(key)
        if compiled is None:
            # Compiling twice in a race is harmless: both results are the same.
            compiled = self._compile(alias, {name: values[name] for name in self._inlined})
            self._compiled[key] = compiled
        sql, slots, fields, make_row = compiled
        params = [values[s.name] if s.name is not None else s.constant for s in slots]
        with connections[alias].cursor() as cursor:
            # Django registers a pure-Python timestamptz loader (to attach its time zone);
            # sessions here run in UTC, so psycopg's C loader gives the same UTC datetimes,
            # and a page of users holds 40 of them (measured: 11-21 % of a list page's CPU).
            cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if fields is not None:
            return [self.model.from_db(alias, fields, row) for row in rows]
        return rows if make_row is None else [make_row(row) for row in rows]


class PreparedInsert:
    """`Model.save(force_insert=True)` of one row, compiled once: the same INSERT, run on the
    primary the router names for the instance."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        # The database computes generated columns (a row's slot): Django never writes them.
        self._fields = [field for field in model._meta.concrete_fields if not field.generated]
        self._sql: str | None = None

    def insert(self, instance: models.Model) -> None:
        alias = router.db_for_write(self.model, instance=instance)
        connection = connections[alias]
        if self._sql is None:
            query = InsertQuery(self.model)
            query.insert_values(self._fields, [instance])
            ((self._sql, _),) = query.get_compiler(using=alias).as_sql()
        params = [
            field.get_db_prep_save(getattr(instance, field.attname), connection)
            for field in self._fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(self._sql, params)
        instance._state.adding = False
        instance._state.db = alias
