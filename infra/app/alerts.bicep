// Alerts on the app's own telemetry: renewals that ended `failed` (the one summary line per renewal,
// "renewal outcome=failed ...", renewal/outcome.py) and outbox deliveries that were dead-lettered
// ("delivery dead-lettered ...", renewal/flow/deliveries.py).
// Dead-lettered and dropped Event Grid deliveries are alerted per vault subscription (vault.bicep).
param location string
param tags object
param namePrefix string
param applicationInsightsId string
@description('E-mail address notified by the action group; empty: no action group, alerts are visible in the portal only.')
param alertEmail string = ''

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

resource failedRenewals 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-renewal-failed-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Certificate renewal failed'
    description: 'At least one renewal ended with outcome=failed; the log line names the vault, certificate and reason.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "renewal " and message has "outcome=failed"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource deadLetteredWebhooks 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-webhook-deadletter-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Deployment webhook dead-lettered'
    description: 'The outbox gave up on a webhook or outcome-event delivery after its maximum age (DESIGN.md section 4); the log line names the endpoint, vault and certificate.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "delivery dead-lettered "'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
