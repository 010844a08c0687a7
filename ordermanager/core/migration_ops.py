"""Migration operations for tables that are big and written all day.

``AddIndexOnline`` is Django's AddIndex, built with CREATE INDEX CONCURRENTLY on
PostgreSQL: a plain CREATE INDEX blocks every write to the table while it builds
(tens of seconds on millions of fills, i.e. fills and orders stall during a
deploy). SQLite (the embedded default, one host, small tables) gets a plain
CREATE INDEX. The migration must set ``atomic = False``; inside a transaction
anyway (a test wrapping migrate, say) it falls back to a plain build rather
than fail. A CONCURRENTLY build that fails leaves an INVALID index behind:
drop it by name and migrate again.
"""

from __future__ import annotations

from django.db.migrations.operations import AddConstraint, AddIndex


class AddIndexOnline(AddIndex):
    def _online(self, schema_editor) -> bool:
        connection = schema_editor.connection
        return connection.vendor == "postgresql" and not connection.in_atomic_block

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not self._online(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not self._online(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)

    def describe(self):
        return f"Create index {self.index.name} on {self.model_name} (concurrently on PostgreSQL)"


class AddUniqueConstraintOnline(AddConstraint):
    """A single-column ``UniqueConstraint`` added without blocking writes on PostgreSQL.

    The unique index is built ``CONCURRENTLY`` first, then attached as the constraint
    (``ADD CONSTRAINT ... UNIQUE USING INDEX``: a catalog change, no scan). Same rules as
    ``AddIndexOnline``: ``atomic = False`` in the migration, a plain build elsewhere.
    """

    def _online(self, schema_editor) -> bool:
        connection = schema_editor.connection
        return connection.vendor == "postgresql" and not connection.in_atomic_block

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not self._online(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        quote = schema_editor.quote_name
        table, name = quote(model._meta.db_table), quote(self.constraint.name)
        columns = ", ".join(quote(model._meta.get_field(f).column) for f in self.constraint.fields)
        schema_editor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({columns})")
        schema_editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")

    def describe(self):
        return f"Create unique constraint {self.constraint.name} on {self.model_name} (index built concurrently)"
