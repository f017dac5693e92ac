-- Incremental: re-reads orders (and orders with new payments) changed since the high-water mark minus
-- a lookback for late updates, and replaces those orders (delete+insert on order_id).
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns'
) }}

{% if is_incremental() %}
{% set since %}
    (select coalesce(max(updated_at), '-infinity'::timestamptz)
            - interval '{{ var("incremental_lookback_days") }} days' from {{ this }})
{% endset %}
{% endif %}

with orders as (
    select * from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where updated_at >= {{ since }}
       or order_id in (select order_id from {{ ref('stg_payments') }} where updated_at >= {{ since }})
    {% endif %}
),

payments as (
    select
        order_id,
        sum(amount) as paid_amount,
        count(*) as payments_count,
        max(paid_at) as last_paid_at
    from {{ ref('stg_payments') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.status,
    o.amount,
    coalesce(p.paid_amount, 0)::numeric(12, 2) as paid_amount,
    coalesce(p.payments_count, 0) as payments_count,
    p.last_paid_at,
    o.status in ('paid', 'shipped', 'delivered') as is_revenue,
    (o.created_at at time zone 'UTC')::date as order_date,
    o.created_at,
    o.updated_at
from orders as o
left join payments as p on p.order_id = o.order_id
