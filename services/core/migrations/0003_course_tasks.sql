-- The fan-out of a course into tasks (docs/fan-out.md). A task is a job of its own in publish_jobs,
-- with its own attempts, claim, heartbeats and verdicts (G1-G6 per task), and these columns set:
-- the course it belongs to, what it encodes, and what it wrote. A course gains its plan (lectures)
-- and each lecture once it is published. Every column is a function of the log (G4).
ALTER TABLE publish_jobs
    ADD COLUMN course_job_id uuid,
    ADD COLUMN task          jsonb,
    ADD COLUMN task_result   jsonb,
    ADD COLUMN lectures      jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN published     jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT a_task_names_its_course CHECK ((task IS NULL) = (course_job_id IS NULL)),
    ADD CONSTRAINT only_a_completed_task_has_a_result
        CHECK (task_result IS NULL OR (task IS NOT NULL AND status = 'completed'));

-- A course's tasks, for its lectures' progress; the course list shows course jobs only.
CREATE INDEX publish_jobs_tasks_of_course ON publish_jobs (course_job_id) WHERE course_job_id IS NOT NULL;
