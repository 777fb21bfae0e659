//! `cargo xtask refresh`: writes the commits above `base` in `vendor/cargo` to
//! `patches/NNNN-slug.patch` and `patches/series`, in a stable form. `--check` fails
//! when the files differ from what it would write.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{Context as _, Result, bail};

use crate::apply::{self, Record};
use crate::git::{self, Git};
use crate::patchfile;
use crate::project::Project;
use crate::series::Series;
use crate::shell;

#[derive(Default, Clone, Copy)]
pub struct RefreshOptions {
    pub check: bool,
}

pub fn run(project: &Project, options: RefreshOptions) -> Result<()> {
    let git = Git::new(project.vendored_cargo());
    let dirty = git.uncommitted()?;
    if !dirty.is_empty() {
        shell::warn(format!(
            "vendor/cargo has uncommitted changes, which refresh leaves out:\n{dirty}"
        ));
    }
    let formatted = patchfile::format_range(&git, &format!("{}..HEAD", git::BASE_TAG))?;
    let patches = apply::read_patches(project)?;
    if let Some(applied) = apply::series_prefix(&formatted, &patches)
        && applied < patches.len()
    {
        bail!(
            "vendor/cargo holds only the first {applied} of the {} patches in patches/series, \
             as a failed `cargo xtask apply` leaves it; refreshing would delete the others.\n\
             Apply them (`git -C vendor/cargo am --3way ../../patches/<file>`, in order) and \
             refresh again, or remove them from patches/series to drop them",
            patches.len()
        );
    }
    let old_series = Series::read(&project.series_file())?;
    let files: Vec<String> = formatted.iter().map(|p| p.file.clone()).collect();
    let series_text = old_series.with_files(&files).render();

    let patches_dir = project.patches_dir();
    let existing: BTreeSet<String> = match fs::read_dir(&patches_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".patch"))
            .collect(),
        Err(_) => BTreeSet::new(),
    };

    let mut differences = Vec::new();
    if fs::read_to_string(project.series_file()).ok().as_deref() != Some(series_text.as_str()) {
        differences.push("series".to_string());
    }
    for patch in &formatted {
        let path = patches_dir.join(&patch.file);
        if fs::read_to_string(&path).ok().as_deref() != Some(patch.text.as_str()) {
            differences.push(patch.file.clone());
        }
    }
    let stale: Vec<&String> = existing.iter().filter(|f| !files.contains(f)).collect();
    differences.extend(
        stale
            .iter()
            .map(|f| format!("{f} (no longer in the series)")),
    );

    if options.check {
        if differences.is_empty() {
            shell::status(
                "Checked",
                format!("patches/ matches vendor/cargo ({} patches)", files.len()),
            );
            return Ok(());
        }
        bail!(
            "patches/ differs from what `cargo xtask refresh` writes from vendor/cargo:\n  {}\n\
             Run `cargo xtask refresh` and commit patches/",
            differences.join("\n  ")
        );
    }

    fs::create_dir_all(&patches_dir)?;
    for file in stale {
        fs::remove_file(patches_dir.join(file))?;
    }
    for patch in &formatted {
        fs::write(patches_dir.join(&patch.file), &patch.text)
            .with_context(|| format!("could not write patches/{}", patch.file))?;
    }
    fs::write(project.series_file(), series_text)?;
    // The tree and patches/ now agree: `apply` has nothing to do.
    Record::current(project, &git)?.save(&git)?;
    if differences.is_empty() {
        shell::status(
            "Fresh",
            format!("patches/ ({} patches, unchanged)", files.len()),
        );
    } else {
        shell::status("Refreshed", format!("patches/: {}", differences.join(", ")));
    }
    Ok(())
}
