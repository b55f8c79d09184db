// Alerts on the app's own metrics (docs/metrics.md): a certificate at risk of expiring, renewals that failed, and
// outbox deliveries that were dead-lettered. Dead-lettered and dropped Event Grid deliveries are alerted per vault
// subscription (vault.bicep).
//
// Why log alerts on customMetrics, not metric alerts: the exporter sends each point as a customMetrics row with its
// attributes as customDimensions. A metric alert (namespace azure.applicationinsights) sees a custom metric's
// dimensions only once "custom metrics with dimensions" is switched on for the component, a setting no ARM property
// deploys, and it cannot ask "is the last value per certificate 1". A scheduled query over customMetrics needs
// nothing more, splits by the same attributes (vault, certificate, reason, endpoint), and reads structured values
// where the former alerts matched log text. Each metric is counted once per renewal, CA answer or delivery, where
// the flow knows it; a log line can be sampled or reworded.
param location string
param tags object
param namePrefix string
param applicationInsightsId string
@description('E-mail address notified by the action group; empty: no action group, alerts are visible in the portal only.')
param alertEmail string = ''
@description('How often the sweep runs, in minutes (RENEWAL_SWEEP_SCHEDULE): the certificate gauges are sent once per sweep, so the expiry alert looks back over two sweeps.')
param sweepIntervalMinutes int = 30

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'renewal'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroups = empty(alertEmail) ? [] : [actionGroup.id]

// ready_status has one series per condition, as cert-manager's: condition=False at 1 is a certificate at risk. The
// last value per certificate decides, so a certificate renewed since no longer counts.
var expiryAtRiskQuery = '''
customMetrics
| where name == "renewal_certificate_ready_status" and tostring(customDimensions.condition) == "False"
| extend vault = tostring(customDimensions.vault), certificate = tostring(customDimensions.certificate)
| summarize arg_max(timestamp, value) by vault, certificate
| where value == 1
| project vault, certificate, atRisk = value
'''

// Counters are sent as deltas (the Azure Monitor exporter's temporality): their sum over the window is the count.
var failedRenewalsQuery = '''
customMetrics
| where name == "renewal_renewals_total" and tostring(customDimensions.status) == "failed"
| extend vault = tostring(customDimensions.vault), reason = tostring(customDimensions.reason)
| summarize failures = sum(valueSum) by vault, reason
'''

var deadLettersQuery = '''
customMetrics
| where name == "renewal_dead_letters_total"
| extend endpoint = tostring(customDimensions.endpoint), kind = tostring(customDimensions.kind)
| summarize deadLetters = sum(valueSum) by endpoint, kind
'''

var expiryWindow = 'PT${2 * sweepIntervalMinutes}M'

var metricAlerts = [
  {
    kind: 'expiry-at-risk'
    displayName: 'Certificate at risk of expiring'
    description: 'The sweep reported a certificate whose renewal has not succeeded and that is close to expiry (renewal_certificate_ready_status condition=False); one alert per vault and certificate.'
    severity: 1
    query: expiryAtRiskQuery
    measure: 'atRisk'
    dimensions: [
      {
        name: 'vault'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'certificate'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    evaluationFrequency: 'PT${sweepIntervalMinutes}M'
    windowSize: expiryWindow
    // Resolved by itself once the certificate is renewed and the sweep reports it ready.
    autoMitigate: true
  }
  {
    kind: 'renewal-failed'
    displayName: 'Certificate renewal failed'
    description: 'At least one renewal ended with status failed (renewal_renewals_total); split by vault and the closed reason. The log line of the renewal names the certificate and the message.'
    severity: 1
    query: failedRenewalsQuery
    measure: 'failures'
    dimensions: [
      {
        name: 'vault'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'reason'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
  }
  {
    // The name the former (log line) alert had, so that a deployment updates it in place rather than adding one.
    kind: 'webhook-deadletter'
    displayName: 'Delivery dead-lettered'
    description: 'The outbox gave up on a delivery (webhook, topic, notification, target) after its maximum age (renewal_dead_letters_total); split by endpoint and kind.'
    severity: 2
    query: deadLettersQuery
    measure: 'deadLetters'
    dimensions: [
      {
        name: 'endpoint'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'kind'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
  }
]

resource metricAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for alert in metricAlerts: {
    name: 'alert-${alert.kind}-${namePrefix}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: alert.displayName
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: alert.evaluationFrequency
      windowSize: alert.windowSize
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Total'
            metricMeasureColumn: alert.measure
            dimensions: alert.dimensions
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: alert.autoMitigate
      actions: {
        actionGroups: actionGroups
      }
    }
  }
]

output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
