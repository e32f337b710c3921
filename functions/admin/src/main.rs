//! `bulk-admin`: tenants, their roles, teams and limits, API credentials, the keyring their
//! secrets are sealed under, and the AWS resources, against either store.

use std::path::PathBuf;

use bulk_users::adapters::{aws, embedded};
use bulk_users::auth::KeyBytes;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, Rotation, ServiceConfig, SettingsChange};
use clap::{Parser, Subcommand, ValueEnum};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(name = "bulk-admin", about = "Administer the bulk user management API")]
struct Cli {
    /// Which store to administer: the local server's embedded store (its keyring is
    /// `master.key` in the data directory), or the AWS table (BULK_TABLE_NAME, BULK_BUCKET_NAME,
    /// BULK_QUEUE_URL, AWS_ENDPOINT_URL, AWS_REGION; credentials and keys also need
    /// BULK_KMS_KEY_ARN, the stack's key, and permission to generate data keys with it).
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
    /// The keyring the credentials' secrets are sealed under: status, rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create the DynamoDB table, S3 bucket, SQS queue and KMS key (for emulators and
    /// development; deployments get them from template.yaml).
    Provision {
        #[arg(long)]
        table: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        queue: String,
        /// Alias of the KMS key (default `alias/{table}-secrets`).
        #[arg(long)]
        key_alias: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// The key versions (current, and older ones still active) and the credentials under each.
    Status,
    /// Adds a key version, re-seals every credential under it and retires the older versions.
    /// Credentials keep working throughout; a run that stops part way is finished by running
    /// it again.
    Rotate {
        /// Re-seal at most this many credentials in this run (the rest in later runs).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// AWS only: makes the master key of a stack deployed before the keyring (its former
    /// `MasterKey` parameter) version 1 of the empty keyring, wrapped by the stack's KMS key,
    /// so that the credentials sealed under it keep working; then run `keys rotate`.
    ImportMasterKey {
        /// The former master key (64 hex characters or base64), from the environment.
        #[arg(long, env = "BULK_MASTER_KEY", hide_env_values = true)]
        master_key: String,
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
        #[arg(long)]
        max_concurrent_batch_creates: Option<u64>,
        /// Whether files dropped into the bucket under incoming/{tenant}/ become jobs; when
        /// off, each is moved aside under rejected/ unprocessed.
        #[arg(long, value_enum)]
        bucket_drops: Option<Switch>,
        /// Days a job and everything recorded about it are kept (1-3650).
        #[arg(long)]
        retention_days: Option<u64>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    if let Command::Provision {
        table,
        bucket,
        queue,
        key_alias,
    } = &cli.command
    {
        let alias = key_alias
            .clone()
            .unwrap_or_else(|| format!("alias/{table}-secrets"));
        return provision(table, bucket, queue, &alias).await;
    }
    let service = match cli.store {
        Store::Embedded => {
            let adapters = embedded::open(&cli.data_dir).await?;
            BulkService::new(adapters.ports, ServiceConfig::default())
        }
        Store::Aws => {
            let settings = aws::AwsSettings::from_env()?;
            // Sealing and rotating need the stack's key: say so before anything is written.
            let seals = matches!(
                cli.command,
                Command::Credential(
                    CredentialCommand::Create { .. } | CredentialCommand::Install { .. }
                ) | Command::Keys(KeysCommand::Rotate { .. } | KeysCommand::ImportMasterKey { .. })
            );
            if seals && settings.kms_key_arn.is_none() {
                return Err(format!(
                    "{} is not set: it must name the stack's KMS key (the output SecretsKeyArn)",
                    aws::KMS_KEY_ENV
                )
                .into());
            }
            let adapters = aws::connect(&settings).await;
            if let Command::Keys(KeysCommand::ImportMasterKey { master_key }) = &cli.command {
                let master_key = KeyBytes::parse_text(master_key)
                    .ok_or("BULK_MASTER_KEY is no key of 32 bytes (64 hex characters or base64)")?;
                let keyring = aws::KmsKeyring::new(
                    adapters.kms.clone(),
                    adapters.dynamodb.clone(),
                    settings.table.clone(),
                    settings.kms_key_arn.clone(),
                );
                keyring.import_master_key(&master_key).await?;
                println!("imported the master key as key version v1: run `keys rotate` next");
                return Ok(());
            }
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
            eprintln!("The secret is shown once and stored only sealed under the keyring.");
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
            max_concurrent_batch_creates,
            bucket_drops,
            retention_days,
        }) => {
            let change = SettingsChange {
                bucket_drops: bucket_drops.map(|switch| switch == Switch::On),
                roles,
                teams,
                locations,
                max_chat_limit,
                max_file_bytes,
                max_rows,
                max_concurrent_jobs,
                requests_per_minute,
                max_concurrent_batch_creates,
                retention_days,
            };
            let settings = service
                .update_settings(&tenant_id(&tenant)?, change)
                .await?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
        }
        Command::Keys(KeysCommand::Status) => {
            let status = service.key_status().await?;
            let versions = &status.versions;
            for version in versions.active() {
                let role = if versions.current == Some(version) {
                    "current"
                } else {
                    "retiring"
                };
                let count = status.credentials.get(&version).copied().unwrap_or(0);
                println!("v{version}\t{role}\t{count} credentials");
            }
            for (version, count) in &status.credentials {
                if !versions.is_active(*version) {
                    println!("v{version}\tnot in the keyring\t{count} credentials");
                }
            }
        }
        Command::Keys(KeysCommand::Rotate { limit }) => {
            let rotation = service.rotate_keys(limit).await?;
            print_rotation(&rotation);
            if !rotation.failed.is_empty() {
                return Err(format!(
                    "{} credentials could not be re-sealed (see the log): {}",
                    rotation.failed.len(),
                    rotation.failed.join(", ")
                )
                .into());
            }
        }
        Command::Keys(KeysCommand::ImportMasterKey { .. }) => {
            return Err(
                "the embedded store reads a master.key of a single key as version 1 \
                        already: nothing to import"
                    .into(),
            );
        }
        Command::Provision { .. } => {}
    }
    Ok(())
}

fn print_rotation(rotation: &Rotation) {
    let version = rotation.version;
    if rotation.added {
        println!("added key version v{version}: new credentials are sealed under it");
    } else {
        println!("going on with the rotation to key version v{version}");
    }
    println!("re-sealed {} credentials", rotation.resealed);
    if rotation.remaining > 0 {
        println!(
            "{} credentials are still under older versions: run `keys rotate` again",
            rotation.remaining
        );
    }
    for retired in &rotation.retired {
        println!("retired key version v{retired}");
    }
}

fn tenant_id(name: &str) -> Result<TenantId, Error> {
    Ok(TenantId::parse(name)?)
}

async fn provision(table: &str, bucket: &str, queue: &str, key_alias: &str) -> Result<(), Error> {
    let settings = aws::AwsSettings {
        table: table.to_owned(),
        bucket: bucket.to_owned(),
        queue_url: String::new(),
        kms_key_arn: None,
        endpoint_url: std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| aws::DEFAULT_REGION.to_owned()),
    };
    let adapters = aws::connect(&settings).await;
    aws::provision::create_table(&adapters.dynamodb, table).await?;
    aws::provision::create_bucket(&adapters.s3, bucket).await?;
    let queue_url = aws::provision::create_queue(&adapters.sqs, queue).await?;
    let key_arn = aws::provision::create_key(&adapters.kms, key_alias).await?;
    println!(
        "export BULK_TABLE_NAME={table} BULK_BUCKET_NAME={bucket} BULK_QUEUE_URL={queue_url} \
         {}={key_arn}",
        aws::KMS_KEY_ENV
    );
    Ok(())
}
