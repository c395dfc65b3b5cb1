-- Jobs carry an operation: upscale (every job before this one) or replace, which
-- has a prompt, a mask (an uploaded input of its own, or a client's URL) and the
-- input image's size, which its result must match.
ALTER TABLE jobs ADD COLUMN operation TEXT NOT NULL DEFAULT 'upscale';
ALTER TABLE jobs ADD COLUMN prompt TEXT;
ALTER TABLE jobs ADD COLUMN mask_url TEXT;
ALTER TABLE jobs ADD COLUMN mask_key TEXT;
ALTER TABLE jobs ADD COLUMN input_width INTEGER;
ALTER TABLE jobs ADD COLUMN input_height INTEGER;
