-- Open-set identification policy; see sqlite/0008_open_set_policy.sql.
ALTER TABLE collection ADD COLUMN target_fpir double precision NOT NULL DEFAULT 0;
ALTER TABLE collection ADD COLUMN calibration json;
