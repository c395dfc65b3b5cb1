-- SQLite's 0010 adds an index for the console's job search. PostgreSQL gets none:
-- a B-tree entry holding the metadata would make a job with large metadata fail to
-- insert (index rows are limited to about 2.7 kB), and a sequential scan with ILIKE
-- is fast enough here. The number keeps both databases' migrations in step.
SELECT 1;
