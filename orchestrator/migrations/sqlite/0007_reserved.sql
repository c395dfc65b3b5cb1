-- Placeholder: this number belongs to a change developed alongside the callback
-- ingest table (0008). Migrations apply in unbroken order, and the number holds its
-- place: the change's own file replaces this one.
SELECT 1;
