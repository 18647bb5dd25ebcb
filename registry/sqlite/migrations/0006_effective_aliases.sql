-- 0006: an alias's effective version. version is the declared one (what an
-- apply or `alias set` asked for); effective, when not NULL, is what serving
-- resolves to until a rollout moves it (NULL: the declared version serves).
ALTER TABLE aliases ADD COLUMN effective BIGINT;
