//! The job state machine, written once: every change of a job's status, the statuses it may
//! happen from and the status it leads to. The stores make each change atomic by translating
//! [`Transition::from`] into their own condition (SQL `status IN (…)`, a DynamoDB condition
//! expression); they never decide which status may become which.

use super::{Job, JobStatus, Timestamp};

/// A change of a job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A new file for a job not yet proceeded: validated again from the start.
    ReplaceFile,
    /// Validation found no error in the job's file.
    AcceptScheme,
    /// Validation found errors in the job's file.
    RejectScheme,
    /// The client asked for the job to be applied: its chunks are queued.
    Proceed,
    /// The sweeper queued the work of an idle job again.
    Resume,
    /// Every chunk of the job is committed.
    Complete,
    /// The job itself cannot be processed (its file vanished, a chunk failed every retry).
    Fail,
    /// Stopped on request.
    Cancel,
}

use JobStatus::{Cancelled, Completed, Created, Failed, InProgress, InvalidScheme, ValidScheme};

impl Transition {
    pub const ALL: [Transition; 8] = [
        Transition::ReplaceFile,
        Transition::AcceptScheme,
        Transition::RejectScheme,
        Transition::Proceed,
        Transition::Resume,
        Transition::Complete,
        Transition::Fail,
        Transition::Cancel,
    ];

    /// The statuses the transition may start from.
    pub fn from(self) -> &'static [JobStatus] {
        match self {
            Transition::ReplaceFile => &[Created, ValidScheme, InvalidScheme],
            Transition::AcceptScheme | Transition::RejectScheme => &[Created],
            Transition::Proceed => &[ValidScheme],
            Transition::Resume | Transition::Complete | Transition::Fail => &[InProgress],
            Transition::Cancel => &[Created, ValidScheme, InvalidScheme, InProgress],
        }
    }

    /// The status the transition leads to.
    pub fn to(self) -> JobStatus {
        match self {
            Transition::ReplaceFile => Created,
            Transition::AcceptScheme => ValidScheme,
            Transition::RejectScheme => InvalidScheme,
            Transition::Proceed | Transition::Resume => InProgress,
            Transition::Complete => Completed,
            Transition::Fail => Failed,
            Transition::Cancel => Cancelled,
        }
    }

    /// Whether a job in `status` may take this transition.
    pub fn allowed_from(self, status: JobStatus) -> bool {
        self.from().contains(&status)
    }

    /// Whether `job` may take this transition now: its status allows it, and a job completes
    /// only once all its chunks are done.
    pub fn allowed_for(self, job: &Job) -> bool {
        self.allowed_from(job.status) && (self != Transition::Complete || job.all_chunks_done())
    }
}

/// A change of a job's status with what it records: what the stores' one conditional write
/// of a status ([`crate::ports::JobStore::change_status`]) is asked to do. The file and the
/// scheme report, which carry more than a status, have writes of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// [`Transition::Proceed`], asked by the API user `by`: who asked and when are recorded.
    Proceed { by: String },
    /// [`Transition::Resume`]: one more resumption.
    Resume,
    /// [`Transition::Complete`]: when it completed.
    Complete,
    /// [`Transition::Fail`], and why.
    Fail { reason: String },
    /// [`Transition::Cancel`].
    Cancel,
}

impl StatusChange {
    pub fn transition(&self) -> Transition {
        match self {
            StatusChange::Proceed { .. } => Transition::Proceed,
            StatusChange::Resume => Transition::Resume,
            StatusChange::Complete => Transition::Complete,
            StatusChange::Fail { .. } => Transition::Fail,
            StatusChange::Cancel => Transition::Cancel,
        }
    }

    /// Whether `job` shows this very change, made at `at`: a store that sends its write again
    /// when the answer was lost finds the condition failing on its own change. Only a proceed
    /// records enough to tell (its instant and its caller) and needs to: its caller queues the
    /// job's chunks only when it started the job.
    pub fn made(&self, job: &Job, at: Timestamp) -> bool {
        match self {
            StatusChange::Proceed { by } => {
                job.status == Transition::Proceed.to()
                    && job.process_requested_at == Some(at)
                    && job.proceed_api_user_name.as_deref() == Some(by.as_str())
            }
            _ => false,
        }
    }
}

/// What a status change did.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChanged {
    /// The job as changed.
    Changed(Job),
    /// The job's status (or, completing, its chunks) did not allow the change: the job as is.
    Refused(Job),
    /// No such job of the tenant.
    Missing,
}

impl StatusChanged {
    /// Whether the change was made.
    pub fn changed(&self) -> bool {
        matches!(self, StatusChanged::Changed(_))
    }
}

impl JobStatus {
    /// Whether the job has reached a final status: no transition leaves it.
    pub fn is_final(self) -> bool {
        !Transition::ALL
            .iter()
            .any(|transition| transition.allowed_from(self))
    }
}

impl Job {
    /// Whether every chunk of the job's file is committed.
    pub fn all_chunks_done(&self) -> bool {
        self.chunks_done >= self.chunk_plan.chunk_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state machine as the README draws it: (status, transitions that leave it).
    #[test]
    fn each_status_is_left_by_its_transitions_only() {
        use Transition::*;
        let expected: [(JobStatus, &[Transition]); 7] = [
            (Created, &[ReplaceFile, AcceptScheme, RejectScheme, Cancel]),
            (ValidScheme, &[ReplaceFile, Proceed, Cancel]),
            (InvalidScheme, &[ReplaceFile, Cancel]),
            (InProgress, &[Resume, Complete, Fail, Cancel]),
            (Completed, &[]),
            (Failed, &[]),
            (Cancelled, &[]),
        ];
        for (status, leaving) in expected {
            let found: Vec<Transition> = Transition::ALL
                .into_iter()
                .filter(|transition| transition.allowed_from(status))
                .collect();
            assert_eq!(found, leaving, "{status}");
            assert_eq!(status.is_final(), leaving.is_empty(), "{status}");
        }
    }

    #[test]
    fn every_status_is_reached() {
        for status in JobStatus::ALL {
            assert!(
                status == Created || Transition::ALL.iter().any(|t| t.to() == status),
                "{status} is never reached"
            );
        }
    }

    #[test]
    fn a_job_completes_only_with_all_its_chunks_done() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": 1, "tenant": "acme", "status": "in_progress", "filename": "f",
            "file_key": "k", "file_bytes": 1, "created_at": "2024-01-01T00:00:00.000Z",
            "updated_at": "2024-01-01T00:00:00.000Z", "process_requested_at": null,
            "completed_at": null, "total_rows": 3, "affected_rows": 0, "failed_rows": 0,
            "scheme_error_count": 0, "update_error_count": 0, "uploaded_api_user_name": "u",
            "proceed_api_user_name": null,
            "chunk_plan": {"rows_per_chunk": 1, "offsets": [1, 2, 3]},
            "chunks_done": 2, "failure_reason": null, "keep_until": "2024-02-01T00:00:00.000Z"
        }))
        .unwrap();
        assert!(!Transition::Complete.allowed_for(&job));
        assert!(Transition::Fail.allowed_for(&job));
        job.chunks_done = 3;
        assert!(Transition::Complete.allowed_for(&job));
        job.status = Completed;
        assert!(!Transition::Complete.allowed_for(&job));
    }
}
