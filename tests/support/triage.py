"""The issue's YAML for BatchInferenceComponent, as written (its field names are the contract),
with the source's location and the model to fill in: shared by the component and wheel tests."""

TRIAGE = """
type: batch_workflows.dagster.BatchInferenceComponent
attributes:
  name: ticket_triage
  key_prefix: [support]
  endpoint: /v1/chat/completions
  model: {model}
  source:
    uri: {uri}
    format: csv
    id_field: ticket_id
  partitions:
    type: per_file
  request:
    messages:
      - {{role: system, content: "Classify the support ticket."}}
      - {{role: user, content: "Subject: {{subject}}\\n\\n{{body}}"}}
    body: {{temperature: 0, max_tokens: 32}}
    response_format:
      type: json_schema
      json_schema: {{name: triage, strict: true, schema: {{type: object, properties: {{label: {{type: string, enum: [billing, bug, account, other]}}}}, required: [label], additionalProperties: false}}}}
  output:
    type: table
    parse: json
  batch_resource_key: batch
  artifacts_resource_key: artifacts
"""
