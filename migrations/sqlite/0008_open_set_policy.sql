-- Open-set identification policy (issue 14). A collection decides "match"
-- either by a fixed distance threshold (threshold > 0, target_fpir 0: every
-- collection made before this version keeps deciding as it did) or by a
-- target false-positive identification rate (target_fpir > 0, threshold 0:
-- the default of new collections), from which the service derives the
-- threshold for the gallery as it is.
--
-- calibration is the service's JSON measurement of the collection's own
-- strangers-by-proxy (gallery.Calibration), NULL until first measured; it
-- is derived data, rewritten as the collection changes.
ALTER TABLE collection ADD COLUMN target_fpir REAL NOT NULL DEFAULT 0;
ALTER TABLE collection ADD COLUMN calibration TEXT;
