-- Placeholder: this number belongs to a change developed alongside the console's
-- indexes (0009). Migrations apply in unbroken order, and the number holds its place:
-- the change's own file replaces this one.
SELECT 1;
