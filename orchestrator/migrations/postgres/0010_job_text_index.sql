-- SQLite's 0010 adds an index for the console's job search. PostgreSQL needs none:
-- its search reads the trigram index of 0009 (and a B-tree entry holding the
-- metadata would make a job with large metadata fail to insert: index rows are
-- limited to about 2.7 kB). The number keeps both databases' migrations in step.
SELECT 1;
