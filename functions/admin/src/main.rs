//! `bulk-admin`: tenants, their roles, teams and limits, API credentials, and the AWS resources,
//! against either store.

use std::path::PathBuf;

use bulk_users::adapters::{aws, embedded};
use bulk_users::auth::MasterKey;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, ServiceConfig, SettingsChange};
use clap::{Parser, Subcommand, ValueEnum};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(name = "bulk-admin", about = "Administer the bulk user management API")]
struct Cli {
    /// Which store to administer: the local server's embedded store (its master key is
    /// `master.key` in the data directory), or the AWS table (BULK_TABLE_NAME, BULK_BUCKET_NAME,
    /// BULK_QUEUE_URL, AWS_ENDPOINT_URL, AWS_REGION; credentials also need BULK_MASTER_KEY).
    #[arg(long, value_enum, default_value = "embedded", env = "BULK_STORE")]
    store: Store,
    /// Data directory of the embedded store.
    #[arg(long, default_value = "./.bulk-local", env = "BULK_DATA_DIR")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Store {
    Embedded,
    Aws,
}

#[derive(Subcommand)]
enum Command {
    /// API credentials: create (the secret is printed once), list, revoke.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Tenant settings: roles, teams, locations and limits.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Create the DynamoDB table, S3 bucket and SQS queue (for emulators and development;
    /// deployments get them from template.yaml).
    Provision {
        #[arg(long)]
        table: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        queue: String,
    },
}

#[derive(Subcommand)]
enum CredentialCommand {
    Create {
        #[arg(long)]
        tenant: String,
        /// Name reported as the job's uploaded/proceed api user name.
        #[arg(long, default_value = "api")]
        name: String,
        /// Public key id (generated when omitted).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Stores a credential with a secret of your choosing (sample events, scripts), replacing
    /// the tenant's credential with the same key id.
    Install {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "api")]
        name: String,
        #[arg(long)]
        key_id: String,
        /// The secret; from the environment rather than the command line, which other users
        /// of the machine can read.
        #[arg(long, env = "BULK_CREDENTIAL_SECRET", hide_env_values = true)]
        secret: String,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    Show {
        #[arg(long)]
        tenant: String,
    },
    Set {
        #[arg(long)]
        tenant: String,
        /// Comma-separated role names (replaces the list).
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
        #[arg(long, value_delimiter = ',')]
        teams: Option<Vec<String>>,
        #[arg(long, value_delimiter = ',')]
        locations: Option<Vec<String>>,
        #[arg(long)]
        max_chat_limit: Option<u32>,
        #[arg(long)]
        max_file_bytes: Option<u64>,
        #[arg(long)]
        max_rows: Option<u64>,
        #[arg(long)]
        max_concurrent_jobs: Option<u64>,
        #[arg(long)]
        requests_per_minute: Option<u64>,
        /// Days a job and everything recorded about it are kept (1-3650).
        #[arg(long)]
        retention_days: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    if let Command::Provision {
        table,
        bucket,
        queue,
    } = &cli.command
    {
        return provision(table, bucket, queue).await;
    }
    let service = match cli.store {
        Store::Embedded => {
            let adapters = embedded::open(&cli.data_dir).await?;
            BulkService::new(adapters.ports, ServiceConfig::default())
        }
        Store::Aws => {
            let settings = aws::AwsSettings::from_env()?;
            // Credentials sealed under any other key would never open: insist on the real one.
            if matches!(
                cli.command,
                Command::Credential(
                    CredentialCommand::Create { .. } | CredentialCommand::Install { .. }
                )
            ) {
                MasterKey::from_env()?;
            }
            let adapters = aws::connect(&settings).await;
            BulkService::new(adapters.ports, ServiceConfig::default())
        }
    };
    match cli.command {
        Command::Credential(CredentialCommand::Create {
            tenant,
            name,
            key_id,
        }) => {
            let issued = service
                .create_credential(&tenant_id(&tenant)?, &name, key_id.as_deref())
                .await?;
            println!(
                "tenant: {tenant}\nkey id: {}\nsecret: {}",
                issued.credential.key_id, issued.secret
            );
            eprintln!("The secret is shown once and stored only sealed under the master key.");
        }
        Command::Credential(CredentialCommand::Install {
            tenant,
            name,
            key_id,
            secret,
        }) => {
            service
                .install_credential(&tenant_id(&tenant)?, &name, &key_id, &secret)
                .await?;
            println!("tenant: {tenant}\nkey id: {key_id}");
        }
        Command::Credential(CredentialCommand::List { tenant }) => {
            // Never the sealed secret nor its look-up digest.
            for credential in service.credentials(&tenant_id(&tenant)?).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    credential.key_id,
                    credential.name,
                    credential.created_at,
                    if credential.revoked {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        Command::Credential(CredentialCommand::Revoke { tenant, key_id }) => {
            service
                .revoke_credential(&tenant_id(&tenant)?, &key_id)
                .await?;
            println!("revoked {key_id}");
        }
        Command::Tenant(TenantCommand::Show { tenant }) => {
            let settings = service.settings(&tenant_id(&tenant)?).await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        Command::Tenant(TenantCommand::Set {
            tenant,
            roles,
            teams,
            locations,
            max_chat_limit,
            max_file_bytes,
            max_rows,
            max_concurrent_jobs,
            requests_per_minute,
            retention_days,
        }) => {
            let change = SettingsChange {
                roles,
                teams,
                locations,
                max_chat_limit,
                max_file_bytes,
                max_rows,
                max_concurrent_jobs,
                requests_per_minute,
                retention_days,
            };
            let settings = service
                .update_settings(&tenant_id(&tenant)?, change)
                .await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        Command::Provision { .. } => {}
    }
    Ok(())
}

fn tenant_id(name: &str) -> Result<TenantId, Error> {
    Ok(TenantId::parse(name)?)
}

async fn provision(table: &str, bucket: &str, queue: &str) -> Result<(), Error> {
    let settings = aws::AwsSettings {
        table: table.to_owned(),
        bucket: bucket.to_owned(),
        queue_url: String::new(),
        endpoint_url: std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| aws::DEFAULT_REGION.to_owned()),
    };
    let adapters = aws::connect(&settings).await;
    aws::provision::create_table(&adapters.dynamodb, table).await?;
    aws::provision::create_bucket(&adapters.s3, bucket).await?;
    let queue_url = aws::provision::create_queue(&adapters.sqs, queue).await?;
    println!("export BULK_TABLE_NAME={table} BULK_BUCKET_NAME={bucket} BULK_QUEUE_URL={queue_url}");
    Ok(())
}
