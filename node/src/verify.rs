//! `ordo verify`: asks a node to compare every replica of every group.

use crate::cli::ClientArgs;

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let verdict: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{}/v1/admin/verify", args.http))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    })?;
    let groups = verdict["groups"].as_array().cloned().unwrap_or_default();
    let bad: Vec<&serde_json::Value> = groups.iter().filter(|g| g["consistent"] != true).collect();
    for g in &bad {
        println!("group {} at index {}: {}", g["group_id"], g["index"], g["replicas"]);
    }
    if verdict["consistent"] == true {
        println!("all {} groups consistent: every replica has the same content hash", groups.len());
        Ok(())
    } else {
        println!("{} of {} groups inconsistent or unverifiable", bad.len(), groups.len());
        std::process::exit(1)
    }
}
