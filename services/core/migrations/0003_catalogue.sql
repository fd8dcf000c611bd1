-- The published course (the catalogue read model): like publish_jobs, a pure function of job_events
-- (G4), written only by the projector in the transaction that applies the events, and rebuilt by
-- `coursecast replay --rebuild` (services/core/catalogue.py holds its rules).

-- What each accepted JobQueued said about the course its job publishes: read when the job completes.
CREATE TABLE course_jobs (
    job_id       uuid PRIMARY KEY,
    course_id    uuid  NOT NULL,           -- the job's own id for a new course, else the re-encoded course
    owner        text  NOT NULL,
    course_name  text  NOT NULL,
    curriculum   text  NOT NULL,
    lectures     jsonb NOT NULL            -- [{index, title, filename?}], in manifest order
);
CREATE INDEX course_jobs_by_course ON course_jobs (course_id);

-- A course appears once a job of it completed; a later completed job of it replaces its lectures.
CREATE TABLE courses (
    course_id     uuid PRIMARY KEY,
    owner         text        NOT NULL,
    name          text        NOT NULL,
    curriculum    text        NOT NULL,
    published_at  timestamptz NOT NULL,    -- its first completion
    updated_at    timestamptz NOT NULL,    -- the completion its lectures come from
    job_id        uuid        NOT NULL,    -- that job: its objects are under hls/<job_id>/
    CHECK (updated_at >= published_at)
);
CREATE INDEX courses_by_owner ON courses (owner, published_at DESC, course_id DESC);
CREATE INDEX courses_by_time ON courses (published_at DESC, course_id DESC);

CREATE TABLE lectures (
    lecture_id          uuid PRIMARY KEY,  -- uuid5(course_id, 'lecture/<index>'): stable across re-encodes
    course_id           uuid NOT NULL REFERENCES courses (course_id) ON DELETE CASCADE,
    index               integer NOT NULL CHECK (index >= 0),
    title               text NOT NULL,
    filename            text,              -- absent for jobs queued before JobQueued v2
    duration_s          double precision NOT NULL CHECK (duration_s >= 0),
    master_playlist_url text NOT NULL,
    thumbnail_url       text NOT NULL,
    poster_url          text,
    UNIQUE (course_id, index)
);

-- Courses taken down (CourseUnpublished): never shown again, whatever completes after.
CREATE TABLE unpublished_courses (
    course_id       uuid PRIMARY KEY,
    unpublished_at  timestamptz NOT NULL,
    requested_by    text        NOT NULL
);
