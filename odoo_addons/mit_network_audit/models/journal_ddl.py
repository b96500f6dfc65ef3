"""Create the package's journal tables inside Odoo's database, on Odoo's cursor (same transaction
as the install, so a failed install leaves nothing behind).  The DDL is the package's own."""

import uuid


def ensure_journal(cr):
    from mit_network_audit.journal import postgres, schema

    cr.execute("SELECT to_regclass('mna_meta') IS NOT NULL")
    if cr.fetchone()[0]:
        cr.execute("SELECT value FROM mna_meta WHERE key = 'schema_version'")
        row = cr.fetchone()
        if row and int(row[0]) >= schema.SCHEMA_VERSION and _table_exists(cr, schema.TABLE):
            return
    for statement in postgres.DDL:
        cr.execute(statement)
    cr.execute("INSERT INTO mna_meta VALUES ('journal_id', %s) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,))
    cr.execute(
        "INSERT INTO mna_meta VALUES ('schema_version', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(schema.SCHEMA_VERSION),),
    )


def _table_exists(cr, name):
    cr.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return cr.fetchone()[0]


def ensure_rollup(cr):
    from mit_network_audit.report import rollup

    for statement in rollup._ddl(True):
        cr.execute(statement)
