"""The ehr-hcl pipeline: stages from raw EHR tables to tracked prediction models (see ``pipeline.cli``)."""
